"""The edge agent: runs on each device, applies the target state the cloud (or the local Device API) gives it.

Installed alone with `iotistic[agent]`: it may import `iotistic.core`, never `iotistic.cloud`, `iotistic.billing`
or `iotistic.ingest`.
"""
