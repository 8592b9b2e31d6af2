"""The TUI's screens: diagnosis (main), search, entry, source, runs, note, help, explain."""
