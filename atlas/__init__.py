"""ATLAS: an event-driven trading platform built as a Faust application."""
