"""The browser test: JupyterLab in a headless Chromium (README, "Browser test")."""
