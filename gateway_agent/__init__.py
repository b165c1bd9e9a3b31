"""The gateway agent: reads sensors on a Raspberry Pi, buffers readings durably, uploads them exactly once."""
