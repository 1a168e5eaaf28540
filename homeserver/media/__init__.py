"""The media repository (spec "Content repository"): uploads, downloads, thumbnails, URL
previews and retention; docs/media.md describes it. HTTP lives in client_api/media*.py."""
