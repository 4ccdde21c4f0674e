import os
import sys

from chaos.drill import main

code = main()
# The Temporal SDK's threads can outlive the event loop and abort the
# interpreter's finalisation (as escalation.cli.run_main explains).
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
