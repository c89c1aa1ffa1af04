"""Before a run sends a row: what no wait can fix is found at once, and said once, clearly.

1. The server answers at all.  One that cannot be reached is waited for
   within the outage budget (a restart is no mistake); then the run fails with
   one :class:`~tsbatch.OutageError` naming the URL.  A certificate it presents
   that is not trusted is a setting to fix, reported at once.
2. It accepts the inference token: a health check it refuses (400, 401, 403)
   is a :class:`~tsbatch.TorchServeAuthError` that says where tokens come from.
3. The model exists: the management API's 404 is an error that lists the
   models the server has.  A management API out of reach (a firewalled port)
   or refusing its token only means the run starts from default settings.

A server that answers the health check with an error (``/ping`` is 500
whenever any model on the server is unhealthy) is no reason to stop: health is
a hint, predictions decide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tsbatch._client import TorchServeClient
from tsbatch._errors import (
    OutageError,
    TorchServeAuthError,
    TorchServeConnectionError,
    TorchServeError,
    TorchServeInferenceError,
)
from tsbatch._protocols._base import TOKEN_HINT
from tsbatch._retry import backoff_delay
from tsbatch._types import ModelInfo

logger = logging.getLogger("tsbatch")


@dataclass(frozen=True)
class Checked:
    """A run's server passed :func:`preflight`; ``info`` is the model's, or ``None`` when unreadable."""

    info: ModelInfo | None


async def preflight(client: TorchServeClient, model: str | None, version: str | None) -> Checked:
    """Check the server, the token and the model, once per run (a job's parts share the check)."""
    await _answers(client)
    return Checked(await _model_info(client, model or client.config.model, version))


async def _answers(client: TorchServeClient) -> None:
    url = client.config.url
    availability = client.availability
    waits = 0
    while True:
        health, error = await client.check()
        if isinstance(error, TorchServeConnectionError):
            if error.kind == "tls":
                raise error  # its message says which setting to fix
            if not availability.patient:
                raise TorchServeConnectionError(
                    f"cannot reach the server at {url} ({error}); is it running? (tsbatch serve start)",
                    kind=error.kind,
                    url=url,
                )
            if waits == 0:
                logger.warning(
                    "cannot reach the server at %s (%s): waiting for it, for at most %g s",
                    url,
                    error,
                    availability.policy.max_outage,
                )
            availability.failed(str(error))
            try:
                availability.check()
            except OutageError as exc:
                raise OutageError(
                    f"cannot reach the server at {url} for longer than max_outage "
                    f"({availability.policy.max_outage:g} s); last failure: {error}",
                    unavailable_s=exc.unavailable_s,
                    cause=str(error),
                ) from None
            waits += 1
            await availability.sleep(
                max(availability.policy.poll_initial, backoff_delay(client.config.retry, waits))
            )
            continue
        if isinstance(error, TorchServeAuthError) or (
            isinstance(error, TorchServeInferenceError) and error.status in (401, 403)
        ):
            detail = (error.detail or str(error)).rstrip(".")
            raise TorchServeAuthError(
                f"the server at {url} refused the inference token ({detail}); {TOKEN_HINT}",
                status=error.status,
                error_type=error.error_type,
            )
        if not health.healthy:
            logger.warning(
                "the server at %s answers but says it is not healthy (%s); going on", url, health.status
            )
        return


async def _model_info(client: TorchServeClient, model: str, version: str | None) -> ModelInfo | None:
    try:
        return await client.get_model_info(model, version)
    except TorchServeInferenceError as exc:
        reason: TorchServeError = exc
        if exc.status == 404:
            missing = await _not_found(client, model, version, exc)
            if missing is not None:
                raise missing from None
    except TorchServeConnectionError as exc:
        reason = exc
    logger.info("model info unavailable, using defaults: %s", reason)
    return None


async def _not_found(
    client: TorchServeClient, model: str, version: str | None, error: TorchServeInferenceError
) -> TorchServeInferenceError | None:
    """The 404 as an error that lists what the server has, once its model list confirms it.

    A 404 from something that is no management API (a proxy, a wrong port)
    confirms nothing: predictions decide then.
    """
    try:
        names = await client.list_models()
    except TorchServeError:
        return None
    if model in names and not version:
        return None
    what = f"model {model!r}" + (f" version {version!r}" if version else "")
    has = f"it has: {', '.join(names)}" if names else "it has no models"
    return TorchServeInferenceError(
        f"{what} is not on the server at {client.config.url}; {has}",
        status=404,
        error_type=error.error_type,
        model=model,
        version=version,
    )
