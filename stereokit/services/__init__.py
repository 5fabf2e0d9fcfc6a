"""One module per subcommand: typed arguments in, a pydantic result out."""
