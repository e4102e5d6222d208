"""Rights on the local server (serving/auth.py): token files (callers, comments, several
tokens), the rights of prediction and feedback tokens, the per-caller rate limit. The
server enforcing them over real sockets: tests/serving/test_auth.py."""
import pytest

from serving.auth import (ANONYMOUS, FEEDBACK, PREDICT, Authenticator, RateLimited, RateLimiter,
                          read_token_file)
from serving.errors import ServingError


def test_token_files_take_callers_comments_and_several_tokens(tmp_path):
    rotated = tmp_path / "predict-tokens"
    rotated.write_text("# rotated 2026-12-01\n\nold-token  web frontend\n"
                       "new-token\tweb frontend\n  bare-token  \n")
    assert read_token_file(str(rotated), "--auth_token_file") == {
        "old-token": "web frontend", "new-token": "web frontend",
        "bare-token": "--auth_token_file line 5"}  # its place, never its value
    single = tmp_path / "token"
    single.write_text("s3cret\n")  # today's format: one token, no caller
    assert read_token_file(str(single), "--feedback_token_file") == {
        "s3cret": "--feedback_token_file line 1"}
    single.write_text("an0ther\n# again\nan0ther\n")  # rotated in place: the same name
    assert read_token_file(str(single), "--feedback_token_file") == {
        "an0ther": "--feedback_token_file line 1"}
    single.write_bytes("\ufeffb0m-token  notepad\n".encode())  # a Windows editor's BOM
    assert read_token_file(str(single), "--auth_token_file") == {"b0m-token": "notepad"}
    (tmp_path / "empty").write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="--feedback_token_file .*empty holds no token"):
        read_token_file(str(tmp_path / "empty"), "--feedback_token_file")
    (tmp_path / "twice").write_text("t one\nt two\n")
    with pytest.raises(ValueError, match="twice line 2: a token given twice"):
        read_token_file(str(tmp_path / "twice"), "--auth_token_file")
    with pytest.raises(ValueError, match="--auth_token_file .*nope: cannot read"):
        read_token_file(str(tmp_path / "nope"), "--auth_token_file")
    # RFC 6750's token characters only: 'töken' passed REST sent as Latin-1, was refused
    # sent as UTF-8 (curl), and no gRPC client could send it
    (tmp_path / "accent").write_text("ok-token a\ntöken b\n")
    with pytest.raises(ValueError, match="accent line 2: the token holds characters a "
                                         "bearer token cannot"):
        read_token_file(str(tmp_path / "accent"), "--auth_token_file")


def test_rights_of_prediction_and_feedback_tokens():
    both = Authenticator({"p": "app"}, {"f": "labeler"})
    assert both.caller("Bearer p", PREDICT) == "app"
    assert both.caller("bearer f", FEEDBACK) == "labeler"
    for header, right, code in (("Bearer f", PREDICT, "PERMISSION_DENIED"),
                                ("Bearer p", FEEDBACK, "PERMISSION_DENIED"),
                                ("Bearer nope", FEEDBACK, "UNAUTHENTICATED"),
                                ("", PREDICT, "UNAUTHENTICATED"), ("p", PREDICT,
                                                                   "UNAUTHENTICATED")):
        with pytest.raises(ServingError) as caught:
            both.caller(header, right)
        assert caught.value.code.name == code, (header, right)
    with pytest.raises(ServingError, match="not in the server's --feedback_token_file"):
        both.caller("Bearer p", FEEDBACK)
    one = Authenticator({"p": "app"}, None)  # one file: its tokens hold both rights
    assert one.caller("Bearer p", FEEDBACK) == "app"
    feedback_only = Authenticator(None, {"f": "labeler"})  # inference open, feedback not
    assert feedback_only.caller("", PREDICT) == ANONYMOUS
    with pytest.raises(ServingError, match="missing or invalid"):
        feedback_only.caller("", FEEDBACK)
    assert Authenticator().caller("", FEEDBACK) == ANONYMOUS and not Authenticator().enabled
    with pytest.raises(ValueError, match="share 1 token.*labeler.*give feedback its own"):
        Authenticator({"same": "app"}, {"same": "labeler"})


def test_rate_limit_is_per_caller_and_refills():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one a second
    limiter.take("a", 50)
    with pytest.raises(RateLimited) as caught:
        limiter.take("a", 20)
    assert caught.value.retry_after == 10 and caught.value.http_status == 429
    limiter.take("b", 60)  # another caller has its own minute
    now[0] = 10.0
    limiter.take("a", 20)
    limiter.give_back("a", 5)
    limiter.take("a", 5)
    with pytest.raises(RateLimited, match="send fewer per request") as caught:
        limiter.take("c", 61)
    assert caught.value.retry_after is None
    RateLimiter(0).take("a", 10**6)  # 0: no limit
