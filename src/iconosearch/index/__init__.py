"""Index stage: versioned FAISS + SQLite indexes and the query engine that searches them."""

import logging

# FAISS announces at INFO which CPU build it loaded (and which it could not); that is noise on
# every command that searches, so only its warnings get through.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
