"""`dermcli serve`: the model behind an HTTP API and a page, between training and cli in the layers."""

TOKEN_VARIABLE = "DERMCLI_SERVE_TOKEN"  # the environment variable of serve's bearer token; here so `--help` imports nothing more
