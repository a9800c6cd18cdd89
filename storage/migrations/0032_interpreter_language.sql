-- 0032: the language someone needs an interpreter in, when they ticked Interpreter and
-- chose it (a code of bot/panel_texts.py's INTERPRETER_LANGUAGES, or 'other'). Kept and
-- forgotten with their support needs: gone after the panel, or when the tick or the place
-- goes. Without it the organiser had to ask, in writing, someone who may not read English.
ALTER TABLE panel_invitations ADD COLUMN interpreter_language TEXT;
