"""Job-process plumbing shared by every step: logging, atomic writes, device threads, GPU slots, provenance."""
