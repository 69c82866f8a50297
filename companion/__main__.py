from companion.cli import app

app()
