"""The web console's server: the single-page app `console/` builds into `dist/`, served as
static files to Envoy, which puts it on the API's own origin (`/` and `/assets/`)."""
