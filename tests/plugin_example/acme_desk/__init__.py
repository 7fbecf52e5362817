"""A tickethub connector for the Acme help desk (an example third-party package)."""
