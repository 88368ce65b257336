"""SQLAlchemy tables and repositories: the only module that speaks SQL."""
