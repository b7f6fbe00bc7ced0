"""The vocabulary every part speaks: values, instruments, accounts, commands, events, control messages."""
