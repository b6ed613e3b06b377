"""mobile_sdk: the light runtime side of the SDK (models, scheduler, pipeline, package reader).

It never imports `export` or `profiling`: those layers plug into its CLI through entry points.
"""
__version__ = "0.1.0"
