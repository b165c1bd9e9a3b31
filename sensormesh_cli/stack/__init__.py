"""The local stack behind `sensormesh up`: every program of a deployment on one machine.

`stack.py` starts and stops the pieces in order, `children.py` runs each
program as its own process, `demo.py` registers the simulated devices,
`examples.py` renders the commands printed for the user (and the README's),
`status.py` shows progress on the terminal.
"""
