"""The `showo` command line: one subcommand per pipeline task (`showo --help`).

Layout: `parser` builds the argparse tree, `models` turns --model/--device/--dtype into a pipeline, `commands`
holds one function per subcommand, `outputs` renders and writes files atomically, `progress` draws progress
bars, streams tokens and prints warnings in one line, and `main` ties them together with the exit codes.
The package does not import `main` here so that `python -m showo.cli.main` runs without a runpy warning.
"""
