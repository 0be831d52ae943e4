"""promoflow's web side: the Flask app factory, its blueprints, and the CLI."""
