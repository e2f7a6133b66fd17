"""Put ``lib/`` on the import path so ``python pose_estimation/<tool>.py`` runs from anywhere."""
import os
import sys
import warnings

# Paddle warns on every import that ccache is missing; it only matters for building C++ extensions.
warnings.filterwarnings('ignore', message='No ccache found')

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'lib')
if LIB not in sys.path:
    sys.path.insert(0, LIB)
