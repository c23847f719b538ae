import sys

from client_sdk.cli import main

sys.exit(main())
