"""Scores against a synthworld scene's ground truth.

- :mod:`.detection` — the detector vs the truth, attribute by attribute (:func:`score_detection`,
  :func:`evaluate_detector`);
- :mod:`.following` — how well a generated video follows the scene its prompt describes
  (:func:`scene_following`, per :data:`SCENE_CATEGORIES`);
- :mod:`.video_quality` — what the detector sees go wrong frame by frame in a (generated) video: track
  jitter, fragments, background drift, shape flips (:func:`video_quality`, per :data:`VIDEO_QUALITY`);
- :mod:`.caption_checks` — does a dense caption name the scene's events at their times;
- :mod:`.events` — the true events in the detector's vocabulary, and the one matcher of a true event
  to a detected event that the first two share.
"""

from synthworld.score.caption_checks import caption_names_events, timed_sentences
from synthworld.score.detection import SceneScore, evaluate_detector, score_detection
from synthworld.score.events import match_event, same_change, true_events
from synthworld.score.following import SCENE_CATEGORIES, scene_following

__all__ = ["SCENE_CATEGORIES", "SceneScore", "caption_names_events", "evaluate_detector", "match_event",
           "same_change", "scene_following", "score_detection", "timed_sentences", "true_events"]
