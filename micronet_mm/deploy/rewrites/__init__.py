"""The deploy rewrites, one module per MicroNet part; the backends pick among them."""
