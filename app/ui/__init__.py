"""The operator dashboard: static HTML, CSS and JS modules served under /ui/ (no build step)."""
