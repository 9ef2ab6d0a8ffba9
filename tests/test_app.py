"""`make app`: the Gradio page in a real browser (headless Chromium driven by selenium) on a tiny random
model: type a sentence, get audio back, check that the page's player plays it and that it has the
length the package API gives for the same settings; an error is one line in the page. The run
browser's readers on a real evaluation folder."""
from __future__ import annotations

import shutil
import socket

import pytest
import torch

from tests.helpers.rng import keep_global_rng  # noqa: F401 - autouse: the suite's random state is kept

import models
from models.audiovae import AudioVAE
from models.official import from_official_config
from models.official_reference import small_official_config
from models.tts import TTSModel
from models.voxcpm import VoxCPMBackbone
from voxlab.text import CharTokenizer

TEXT = "hello there world"
MAX_LEN = 25  # patches: the stop head below never fires, so the audio is exactly this long
HOP, PATCH, SR = 640, 2, 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random model with the paper's hop (640) whose stop head always says "go on"."""
    with torch.random.fork_rng():  # a module fixture: the autouse RNG guard does not cover it
        torch.manual_seed(0)
        config = {k: v for k, v in from_official_config(small_official_config()).items() if k != "_target_"}
        bb = VoxCPMBackbone(**config)
        with torch.no_grad():  # stop logits = (5, 0) whatever the state: class 0 (continue) always wins
            bb.stop_proj.weight.zero_()
            bb.stop_proj.bias.fill_(1.0)
            bb.stop_head.weight.zero_()
            bb.stop_head.weight[0] = 5.0
        vae = AudioVAE(encoder_dim=4, encoder_rates=[2, 5, 8, 8], latent_dim=8, decoder_dim=16,
                       decoder_rates=[8, 8, 5, 2], sample_rate=SR)
    tts = TTSModel(bb, vae, CharTokenizer(list(" abcdefghijklmnopqrstuvwxyz,.'")))
    return models.export(tts, tmp_path_factory.mktemp("app") / "model")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("headless Chromium is not installed: the browser test needs Debian's chromium and "
                    "chromium-driver packages (apt-get install chromium chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    d = webdriver.Chrome(options=options, service=Service(driver))
    yield d
    d.quit()


def test_the_page_synthesises_plays_and_reports_errors(model_dir, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from voxlab.cli.app import build_app, theme

    wav, sr = models.load(model_dir).generate(TEXT, seed=0, max_len=MAX_LEN)  # what the page must give
    assert len(wav) == MAX_LEN * PATCH * HOP and sr == SR

    port = _free_port()
    app = build_app(str(model_dir), testsets=[], runs=[])
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, theme=theme(), ssr_mode=False,
               quiet=True)
    try:
        d, wait = browser, (lambda seconds, until: WebDriverWait(browser, seconds).until(until))
        css = lambda sel: d.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
        status = lambda: d.find_element(By.CSS_SELECTOR, "#tts-status").text  # noqa: E731
        d.get(f"http://127.0.0.1:{port}")
        wait(60, lambda _: css("#tts-text textarea") and css("#tts-go"))

        # an error is a line in the page, not a traceback: no text yet
        css("#tts-go")[0].click()
        wait(60, lambda _: "Error" in status())
        assert "TEXT is empty" in status() and "Traceback" not in d.page_source

        css("#tts-text textarea")[0].send_keys(TEXT)
        cap = d.find_element(By.CSS_SELECTOR, "input[aria-label^='length cap']")
        cap.send_keys(Keys.CONTROL, "a")
        cap.send_keys(str(MAX_LEN), Keys.TAB)
        css("#tts-go")[0].click()
        wait(120, lambda _: "real-time factor" in status())
        assert f"{len(wav) / sr:.2f} s of audio" in status()

        # the served wav, decoded by the browser: the API's length
        wait(30, lambda _: css("#tts-audio a[href*='file=']"))
        url = css("#tts-audio a[href*='file=']")[0].get_attribute("href")
        duration = d.execute_async_script(
            "const done = arguments[arguments.length - 1], a = new Audio(arguments[0]);"
            "a.onloadedmetadata = () => done(a.duration); a.onerror = () => done('error ' + a.error.code);", url)
        assert duration == pytest.approx(len(wav) / sr, abs=1e-3)
        # the page's own player plays it: the button turns to Pause and the clock moves
        css("#tts-audio button[aria-label=Play]")[0].click()
        wait(30, lambda _: css("#tts-audio button[aria-label=Pause]"))
        wait(30, lambda _: css("#tts-audio time#time")[0].text not in ("", "0:00"))
        assert css("#tts-audio time#duration")[0].text == "0:02"
    finally:
        app.close()


def test_run_browser_reads_an_evaluation_folder(tmp_path):
    from eval.__main__ import main
    from tests.helpers.testset import make_testset
    from voxlab.cli.app import find_results, result_view, utterance_view

    meta = make_testset(tmp_path / "ts", gen_dir=tmp_path / "gen")
    out = tmp_path / "runs" / "x" / "eval" / "en" / "step_10"
    assert main(["--testset", str(meta), "--wavs", str(tmp_path / "gen"), "--asr", "none", "--sim", "none",
                 "--out", str(out)]) == 0
    assert find_results([tmp_path / "runs"]) == [str(out)]
    summary, utts = result_view(str(out))
    assert summary.startswith("# Seed-TTS-Eval") and utts == ["en_001", "en_002", "zh_001", "zh_002"]
    gen, truth, prompt, facts = utterance_view(str(out), "zh_001")
    assert gen == str(tmp_path / "gen" / "zh_001.wav")
    assert truth == str(tmp_path / "ts" / "wavs" / "zh_001.wav") and prompt.endswith("zh_001_prompt.wav")
    assert "你好，世界！" in facts and "duration_ratio" in facts
    with pytest.raises(ValueError, match="no utterance 'nope'"):
        utterance_view(str(out), "nope")
