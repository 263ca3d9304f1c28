"""Connect Django users to Atlassian (Jira, Confluence) through OAuth 2.0 (3LO)."""

__version__ = "0.1.0.dev0"
