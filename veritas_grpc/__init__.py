"""Veritas: gRPC backend for online-exam integrity monitoring."""
