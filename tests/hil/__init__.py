"""The hardware-in-the-loop suite (`make hil-test`) and its virtual rig; `make test` does not collect it."""
