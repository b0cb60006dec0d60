"""The driving maths: from the webcam face's motion to the character's driving keypoints, and the crops.

``animation`` (per-frame official maths), ``expressions`` and ``idle`` (offsets on top), ``filters``
(One Euro), ``crop`` (source crop, driving crop, paste-back geometry).
"""
