"""gRPC stubs generated from ``proto/cloudai/v1/*.proto`` by ``clients/python/regen.py``
(grpcio-tools 1.85.1). Do not edit: change the protos and run the script.

The typed wrapper in :mod:`cloudai` is the supported API; these modules are for the
calls it does not wrap.
"""
