"""The command line (the roof of the house: nothing below it imports it).

``app.py`` holds the Typer app and the one list of commands; ``options.py`` what every command shares;
``<name>_cmd.py`` one command each; ``tables.py`` the tables several commands print.
"""
