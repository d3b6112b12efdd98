"""Decoding: MaskGIT-style parallel image sampling, autoregressive text sampling, schedules and filters."""
