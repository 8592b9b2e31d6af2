"""The TUI's widgets: the suggestion table, the detail pane, the evidence sparkline, entry rendering."""
