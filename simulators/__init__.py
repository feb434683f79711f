"""Simulated factory: OPC UA CNC machines, Modbus PLCs and meters that know the ground truth."""
