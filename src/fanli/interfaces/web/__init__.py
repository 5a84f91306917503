"""The web application and the customer portal, mounted into the API's ASGI app (``views``),
in Simplified Chinese and English (``i18n``)."""
