"""The fault suite and the fuzzers: short under ``make test``, long under ``make faults``."""
