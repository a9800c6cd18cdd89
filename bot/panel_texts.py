"""What panel messages say, in each person's language: invitations, answers, notices.

The texts live in dialogues/panels.yaml (English msgids, translated in locales/). Button
callback data carries each invitation's random token, never a person's Telegram id:
"pr:<token>:<action>" for people invited, "pm:<panel id>:<action>" for staff.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from babel import Locale

from bot.datetimes import format_moment
from bot.desk import DialogueTexts
from bot.enrolment import REGION_NAMES
from bot.rendering import Catalogs
from state_machines.definition import EXPLAIN_BUTTON_LABEL
from state_machines.engine import Engine
from storage.panels import Invitation, Panel, PanelSummary

RSVP_PREFIX = "pr:"  # pr:<token>:<y|m|n|c|d|r|e|x|s:<need>|l:<language>>
MANAGE_PREFIX = "pm:"  # pm:<panel id>:<m|r|w|c|x|t>
# What changed, for the note above an invitation edited after the change.
CHANGED_TIME = "time"
CHANGED_PLACE = "place"
CHANGED_BOTH = "both"
_CHANGE_NOTES = {
    CHANGED_TIME: "invitation_moved_note",
    CHANGED_PLACE: "invitation_place_note",
    CHANGED_BOTH: "invitation_changed_note",
}
ANSWER_PREFIX = "pa:"  # pa:<token>: the organiser answers one person
SUPPORT_NEEDS: tuple[str, ...] = ("travel", "childcare", "interpreter", "access")
# The languages offered for an interpreter, when Interpreter is ticked: British Sign
# Language, Welsh, and languages often spoken by people on probation in England and Wales
# whose first language is not English; then "another language" (the organiser asks).
INTERPRETER_LANGUAGES: tuple[str, ...] = (
    "bsl", "cy", "pl", "ro", "lt", "sq", "ur", "pa", "bn", "ar", "fa", "ku", "pt", "so", "tr",
    "vi", "other",
)  # fmt: skip
# Names CLDR gives that read oddly on a button ("kurdî (kurmancî)"), and the scripts written
# right to left, whose names go after the reader's so Telegram keeps the brackets in order.
_NATIVE_NAMES = {"ku": "Kurdî"}
_RIGHT_TO_LEFT = frozenset({"ar", "fa", "ur"})
_ANSWER_KEYS = {
    "yes": "answer_yes",
    "maybe": "answer_maybe",
    "no": "answer_no",
    "waiting": "answer_waiting",
    "cancelled": "answer_cancelled",
    "invited": "answer_none",
}
Payload = dict[str, Any]


class PanelTexts(DialogueTexts):
    """Renders panel messages in a person's language."""

    def __init__(self, engine: Engine, catalogs: Catalogs, zone: str) -> None:
        super().__init__(engine, catalogs, "panels")
        self._zone = zone

    def when(self, starts_at: int, locale: str) -> str:
        return format_moment(starts_at, locale, self._zone)

    def place(self, place: str, locale: str) -> str:
        return self.text(locale, "online") if place == "online" else place

    def title_of(self, panel: Panel, locale: str) -> str:
        """The panel's title in the reader's language: Welsh when staff gave it."""
        return panel.title_cy if locale == "cy" and panel.title_cy else panel.title

    def place_of(self, panel: Panel, locale: str) -> str:
        """Where the panel is, in the reader's language (Welsh when staff gave it)."""
        if panel.place == "online":
            return self.text(locale, "online")
        return panel.place_cy if locale == "cy" and panel.place_cy else panel.place

    def region(self, slug: str, locale: str) -> str:
        return self._catalogs.gettext(locale, REGION_NAMES.get(slug, slug))

    def needs(self, needs: Iterable[str], locale: str, language: str | None = None) -> str:
        """The needs' names, in order; the interpreter's with its `language`, when chosen."""
        names = [self.need(n, locale, language) for n in SUPPORT_NEEDS if n in set(needs)]
        return ", ".join(names) or self.text(locale, "no_help_offered")

    def need(self, need: str, locale: str, language: str | None = None) -> str:
        name = self.text(locale, f"need_{need}")
        if need == "interpreter" and language:
            name = self.text(
                locale, "need_in_language", need=name, language=self.language(language, locale)
            )
        return name

    def language(self, code: str, locale: str) -> str:
        """An interpreter's language, named in the reader's language."""
        if code in ("bsl", "other"):
            return self.text(locale, f"language_{code}")
        return str(Locale.parse(locale).languages.get(code, code))

    def language_picker(self, panel: Panel, invitation: Invitation, locale: str) -> Payload:
        """Which language the interpreter must speak, under the answer (a ticket stays in
        view): each named in itself too (someone who reads English poorly finds their
        own), two to a row; Skip goes back to the help with Interpreter ticked."""
        token = invitation.token
        buttons = []
        for code in INTERPRETER_LANGUAGES:
            label = self.language(code, locale)
            if code not in ("bsl", "other"):
                native = _NATIVE_NAMES.get(code) or Locale.parse(code).get_display_name(code)
                if native and native.casefold() != label.casefold():
                    # Right to left: the reader's name first, so the brackets stay put.
                    rtl = code in _RIGHT_TO_LEFT
                    label = f"{label} ({native})" if rtl else f"{native} ({label})"
            buttons.append({"text": label, "callback_data": f"{RSVP_PREFIX}{token}:l:{code}"})
        rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
        rows.append([self._button(locale, "language_skip", f"{RSVP_PREFIX}{token}:l:none")])
        question = self.text(locale, "language_question")
        status = self._answer_status(panel, invitation, locale, None)
        text = f"{status}\n\n{question}" if status else question
        return {"text": text, "buttons": rows}

    def ticket_line(
        self,
        ticket: str,
        needs: Iterable[str],
        offered: Iterable[str],
        locale: str,
        language: str | None = None,
    ) -> str:
        """A line of the organiser's ticket list: the code, and the help that person asked
        for (help the panel does not offer marked, so the organiser can arrange it: the
        person was told "we will ask")."""
        wanted, on_offer = set(needs), set(offered)
        names = []
        for need in SUPPORT_NEEDS:
            if need in wanted:
                label = self.need(need, locale, language)
                if need not in on_offer:
                    label = self.text(locale, "ticket_need_not_offered", need=label)
                names.append(label)
        return f"{ticket}: {', '.join(names)}" if names else ticket

    def form_values(self, values: Mapping[str, str], locale: str) -> dict[str, str]:
        """A staff member's panel form values as they read them (for the preview)."""
        shown = dict(values)
        if values.get("starts_at", "").isdigit():
            shown["starts_at"] = self.when(int(values["starts_at"]), locale)
        if "place" in values:
            shown["place"] = self.place(values["place"], locale)
        if "region" in values:
            shown["region"] = self.region(values["region"], locale)
        if values.get("capacity", "").isdigit():
            shown["capacity"] = self.number(int(values["capacity"]), locale)
        shown["support"] = self.needs(values.get("support", "").split(","), locale)
        if "title" in values:  # a panel form (this runs for every message with values)
            for welsh in ("title_cy", "place_cy"):
                shown.setdefault(welsh, self.text(locale, "no_welsh"))
        return shown

    def _panel_params(self, panel: Panel, locale: str) -> dict[str, str]:
        return {
            "title": self.title_of(panel, locale),
            "when": self.when(panel.starts_at, locale),
            "place": self.place_of(panel, locale),
            "support": self.needs(panel.support_offered, locale),
        }

    def _button(self, locale: str, key: str, data: str) -> dict[str, str]:
        return {"text": self.text(locale, key), "callback_data": data}

    def _answer_buttons(self, token: str, locale: str) -> list[list[dict[str, str]]]:
        explain = {
            "text": self.common(locale, EXPLAIN_BUTTON_LABEL),
            "callback_data": f"{RSVP_PREFIX}{token}:e",
        }
        return [
            [
                self._button(locale, "answer_yes", f"{RSVP_PREFIX}{token}:y"),
                self._button(locale, "answer_maybe", f"{RSVP_PREFIX}{token}:m"),
                self._button(locale, "answer_no", f"{RSVP_PREFIX}{token}:n"),
            ],
            [explain],
        ]

    def invitation_explained(self, token: str, locale: str) -> Payload:
        """What a panel is and what each answer does, then "Can you come?" again, with
        the answer buttons (the brief: "I don't understand" always possible)."""
        return {
            "text": self.text(locale, "invitation_explained"),
            "buttons": self._answer_buttons(token, locale),
        }

    def invitation(self, panel: Panel, token: str, locale: str) -> Payload:
        return self.invitation_with(self.invitation_text(panel, locale), token, locale)

    def invitation_text(self, panel: Panel, locale: str) -> str:
        """The invitation, the same for everyone who reads this language (a panel's parts
        make it once per language, not once per person: formatting its date was half a
        part's time)."""
        return self.text(locale, "invitation", **self._panel_params(panel, locale))

    def invitation_with(self, text: str, token: str, locale: str) -> Payload:
        """The invitation's message: its text, and the answer buttons of one invitation."""
        return {"text": text, "buttons": self._answer_buttons(token, locale)}

    def invitation_moved(self, text: str, token: str, locale: str, changed: str) -> Payload:
        """An invitation already sent, edited in place after its panel moved (`text` is
        the invitation with the new date or place): still answerable, and saying first
        what changed (`CHANGED_TIME`, `CHANGED_PLACE` or `CHANGED_BOTH`)."""
        note = self.text(locale, _CHANGE_NOTES[changed])
        return {"text": f"{note}\n\n{text}", "buttons": self._answer_buttons(token, locale)}

    def answer(
        self, panel: Panel, invitation: Invitation, locale: str, position: int | None = None
    ) -> Payload:
        """What a person sees after answering, with the buttons that fit their answer: the
        support needs on offer (ticked when chosen), and a way to cancel or change."""
        token = invitation.token
        status = self._answer_status(panel, invitation, locale, position)
        if status is None:
            key = "place_cancelled" if invitation.answer == "cancelled" else "no_noted"
            return {"text": self.text(locale, key)}
        text = status
        buttons: list[list[dict[str, str]]] = []
        # Every need is asked about, offered or not (marked "we will ask"): the brief has
        # people say what they need to come, not only what staff thought to offer.
        text += "\n\n" + self.text(locale, "support_question")
        if any(need not in panel.support_offered for need in SUPPORT_NEEDS):
            text += "\n" + self.text(locale, "support_not_offered")
        for need in SUPPORT_NEEDS:
            tick = "✓ " if need in invitation.support_needs else ""
            label = self.need(need, locale, invitation.interpreter_language)
            if need not in panel.support_offered:
                label = self.text(locale, "need_not_offered", need=label)
            data = f"{RSVP_PREFIX}{token}:s:{need}"
            buttons.append([{"text": tick + label, "callback_data": data}])
        explain = {
            "text": self.common(locale, EXPLAIN_BUTTON_LABEL),
            "callback_data": f"{RSVP_PREFIX}{token}:x",
        }
        buttons.append([self._button(locale, "done_button", f"{RSVP_PREFIX}{token}:d"), explain])
        if invitation.answer == "maybe":
            buttons.append(self._answer_buttons(token, locale)[0][::2])  # Yes, No
        else:
            buttons.append([self._button(locale, "cancel_place_button", f"{RSVP_PREFIX}{token}:c")])
        return {"text": text, "buttons": buttons}

    def _answer_status(
        self, panel: Panel, invitation: Invitation, locale: str, position: int | None
    ) -> str | None:
        """Where the person stands (a place and its ticket, maybe, the waiting list); None
        when they are not coming."""
        params = self._panel_params(panel, locale)
        if invitation.answer == "yes":
            return self.text(locale, "place_held", ticket=invitation.ticket or "", **params)
        if invitation.answer == "maybe":
            return self.text(locale, "maybe_noted", **params)
        if invitation.answer == "waiting" and position is not None:
            return self.text(locale, "waiting_list", position=str(position), **params)
        if invitation.answer == "waiting":
            return self.text(locale, "still_waiting", **params)
        return None

    def support_explained(self, panel: Panel, invitation: Invitation, locale: str) -> Payload:
        """What each kind of help is, then the answer with its help buttons again."""
        payload = self.answer(panel, invitation, locale)
        return {**payload, "text": f"{self.text(locale, 'support_explained')}\n\n{payload['text']}"}

    def place_freed(self, panel: Panel, invitation: Invitation, locale: str) -> Payload:
        text = self.text(
            locale,
            "place_freed",
            ticket=invitation.ticket or "",
            **self._panel_params(panel, locale),
        )
        cancel = self._button(locale, "cancel_place_button", f"{RSVP_PREFIX}{invitation.token}:c")
        return {"text": text, "buttons": [[cancel]]}

    def given_up(self, panel: Panel, invitation: Invitation, locale: str) -> Payload:
        """What someone who withdrew (no more invitations, or stop) gave up at a panel."""
        key = {"yes": "place_given_up", "waiting": "waiting_given_up"}.get(
            invitation.answer, "maybe_given_up"
        )
        return {"text": self.text(locale, key, **self._panel_params(panel, locale))}

    def reminder(self, panel: Panel, invitation: Invitation, locale: str) -> Payload:
        params = self._panel_params(panel, locale)
        if invitation.answer == "yes":
            text = self.text(locale, "reminder_place", ticket=invitation.ticket or "", **params)
            data = f"{RSVP_PREFIX}{invitation.token}:c"
            return {"text": text, "buttons": [[self._button(locale, "cancel_place_button", data)]]}
        text = self.text(locale, "reminder_maybe", **params)
        return {"text": text, "buttons": self._answer_buttons(invitation.token, locale)}

    def moved(self, panel: Panel, token: str, answer: str, locale: str) -> Payload:
        return self._changed("panel_moved", panel, token, answer, locale)

    def place_changed(self, panel: Panel, token: str, answer: str, locale: str) -> Payload:
        return self._changed("panel_place_changed", panel, token, answer, locale)

    def _changed(self, key: str, panel: Panel, token: str, answer: str, locale: str) -> Payload:
        """A new date or place, told to someone coming, waiting or unsure. Someone who said
        maybe is asked again, with the answers (a move to within a day has no reminder to
        ask them); the others can give their place back."""
        params = self._panel_params(panel, locale)
        if answer == "maybe":
            text = self.text(locale, f"{key}_maybe", **params)
            return {"text": text, "buttons": self._answer_buttons(token, locale)}
        text = self.text(locale, key, **params)
        cancel = self._button(locale, "cancel_place_button", f"{RSVP_PREFIX}{token}:c")
        return {"text": text, "buttons": [[cancel]]}

    def called_off(self, panel: Panel, locale: str) -> Payload:
        return {"text": self.text(locale, "panel_called_off", **self._panel_params(panel, locale))}

    def relayed(self, panel: Panel, token: str, message: str, locale: str) -> Payload:
        """The organiser's words, passed on, with a button to answer through the bot."""
        text = self.text(
            locale, "message_from_organiser", title=self.title_of(panel, locale), message=message
        )
        reply = self._button(locale, "reply_button", f"{RSVP_PREFIX}{token}:r")
        return {"text": text, "buttons": [[reply]]}

    def reply_to_organiser(
        self, panel: Panel, invitation: Invitation, message: str, locale: str
    ) -> Payload:
        """A person's words, passed to the organiser: their ticket (or their answer) stands
        in for who they are."""
        return self._to_organiser("reply_received", panel, invitation, locale, message=message)

    def needs_to_organiser(
        self, panel: Panel, invitation: Invitation, needs: Sequence[str], locale: str
    ) -> Payload:
        """Help someone asked for that the panel does not offer, for its organiser to sort."""
        names = self.needs(needs, locale, invitation.interpreter_language)
        return self._to_organiser("need_asked", panel, invitation, locale, needs=names)

    def _to_organiser(
        self, key: str, panel: Panel, invitation: Invitation, locale: str, **params: str
    ) -> Payload:
        """`key` (or `key`_no_ticket), about one invited person, with the Answer button that
        writes back to them."""
        if invitation.ticket:
            who = invitation.ticket
        else:
            # The answer they gave stands in for who they are (never an id or a name).
            given = invitation.answer if invitation.answer in _ANSWER_KEYS else "invited"
            who = self.text(locale, _ANSWER_KEYS[given])
            key = f"{key}_no_ticket"
        text = self.text(locale, key, title=self.title_of(panel, locale), who=who, **params)
        answer = self._button(locale, "answer_button", f"{ANSWER_PREFIX}{invitation.token}")
        return {"text": text, "buttons": [[answer]]}

    def summary(
        self,
        summary: PanelSummary,
        locale: str,
        started: bool = False,
        shows_needs: bool = True,
    ) -> Payload:
        """One upcoming panel for staff: answers so far, help asked for (only to those who
        arrange the day, `shows_needs`: with one place taken and the ticket codes listed,
        "Interpreter 1" told any staff of the area what that person needs), and what they
        can do (once it has `started`, no longer move it or call it off)."""
        panel = summary.panel
        requested = [
            f"{self.text(locale, f'need_{need}')} {self.number(count, locale)}"
            for need, count in sorted(summary.support_requested.items())
            if count and need in SUPPORT_NEEDS
        ]
        if not shows_needs:
            requested = [self.text(locale, "needs_for_organiser")]
        text = self.text(
            locale,
            "panel_summary",
            title=self.title_of(panel, locale),
            when=self.when(panel.starts_at, locale),
            place=self.place_of(panel, locale),
            region=self.region(panel.region, locale),
            yes=self.number(summary.yes, locale),
            capacity=self.number(panel.capacity, locale),
            maybe=self.number(summary.maybe, locale),
            waiting=self.number(summary.waiting, locale),
            no=self.number(summary.no, locale),
            cancelled=self.number(summary.cancelled, locale),
            invited=self.number(summary.invited, locale),
            support=", ".join(requested) or self.text(locale, "no_help_offered"),
        )
        data = f"{MANAGE_PREFIX}{panel.id}:"
        change = [
            self._button(locale, "panel_move_button", data + "r"),
            self._button(locale, "panel_where_button", data + "w"),
        ]
        places = [self._button(locale, "panel_places_button", data + "c")]
        cancel = [self._button(locale, "panel_cancel_button", data + "x")]
        buttons = [
            [self._button(locale, "panel_message_button", data + "m")],
            *([] if started else [change, places, cancel]),
            [self._button(locale, "panel_tickets_button", data + "t")],
        ]
        return {"text": text, "buttons": buttons}
