"""Edge agent: polls OPC UA and Modbus devices and publishes over MQTT with store-and-forward."""
