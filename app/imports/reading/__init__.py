"""Reading a file: its format, its header, record-aligned blocks, and parsing them (pure, in worker processes)."""
