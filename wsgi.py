"""The WSGI entry point for gunicorn (`gunicorn wsgi:app`); RISK_CONFIG names the config file."""
from riskcore.api.factory import create_app

app = create_app()
