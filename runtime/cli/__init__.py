"""The command-line tool: ``main`` dispatches to one module per subcommand."""
