"""The demo (``callqa demo``): its scripted calls and their speech, the producer library
(``callqa produce``) and the live-transcripts follower."""
