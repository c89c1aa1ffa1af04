"""Dask support; needs the ``dask`` extra (``pip install 'tsbatch[dask]'``).

Importing this module registers ``.ts`` on Dask DataFrames::

    import tsbatch.dask
    result = ddf.ts.classify("text")  # lazy; .compute() or .to_parquet() runs it
"""

from tsbatch._dask import DaskFrameAccessor

__all__ = ["DaskFrameAccessor"]
