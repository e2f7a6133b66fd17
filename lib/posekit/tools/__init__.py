"""The command-line tools behind pose_estimation/*.py and the posekit-* console scripts."""
import warnings

# Paddle warns on every import that ccache is missing; it only matters for building C++ extensions.
warnings.filterwarnings('ignore', message='No ccache found')
