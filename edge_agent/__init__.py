"""Edge agent: polls OPC UA and Modbus devices and publishes over MQTT with store-and-forward."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("factory-evidence")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
