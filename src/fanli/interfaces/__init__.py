"""The interfaces: HTTP API, web UI and CLI. They parse input, call one domain function, render."""
