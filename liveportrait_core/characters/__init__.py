"""Character images, from the file to what the networks need, and the check that tells a user whether an
image will do.

- ``faces``: the face in a character image (MediaPipe, static mode): ``CharacterFaceFinder``, the confidence
  gate and the refusal that names the threshold; ``SourceFace``; ``CharacterError``.
- ``preparation``: ``PreparedCharacter``: decode, find the face, the official source crop, the appearance and
  motion networks once.
- ``cache``: the disk cache of preparations (content + model key, atomic writes, never the user's files).
- ``library``: ``CharacterLibrary``: scan the folders in a stable order, choose by name or slot, the device LRU;
  ``check_chosen_character``.
- ``check``: the ``check-character`` report: measurements, verdict and advice, previews, the table.

The thresholds (``characters.min_face_px``, ``characters.min_face_confidence``) come from
``settings.CharacterSettings`` everywhere.
"""
