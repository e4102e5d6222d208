"""The run report's scoring (local/report/scoring.py): redacted spans shown by type name."""


def test_redacted_spans_show_by_type_name_in_the_report():
    """The examples hold redaction's placeholders ([unused1], the word pieces the model
    reads); the report names them as their types, custom ones as the run named them."""
    from local.report.scoring import placeholder_names, readable

    names = placeholder_names({"redact": "all", "custom_patterns": [["ticket", "TCK-[0-9]{6}"]]})
    assert readable("mail [unused1], call [unused3] about [unused10]; [unused99] [x]",
                    names) == "mail [EMAIL], call [PHONE] about [TICKET]; [unused99] [x]"
    assert readable("[unused6] [unused7] [unused2]", placeholder_names(None)) == \
        "[CARD] [IBAN] [URL]"
