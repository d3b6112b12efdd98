"""`showo bench`: our fast paths against a faithful re-creation of the official algorithms, side by side."""
