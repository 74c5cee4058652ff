"""MedServe benchmarks: numbers live here, never in pass/fail tests."""
