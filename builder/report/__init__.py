"""What a run tells people: the terminal summary and live view (terminal) and the report files
for people and CI (files: results.json, junit.xml, report.html).

Reads a finished or running pipeline Run; nothing below it imports this room.
"""
