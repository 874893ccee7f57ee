"""Conformance suite every :class:`lockbox.crypto.base.CryptoBackend` must pass.

Use by subclassing and providing a ``backend`` fixture::

    class TestMyBackend(CryptoBackendConformance):
        @pytest.fixture
        def backend(self):
            return MyBackend()

The class is not named ``Test*``, so pytest does not collect it alone. It
imports only the standard library, pytest and lockbox's protocol, so it runs
unchanged inside Pyodide. Every known answer below names its source; all of
them were also checked against a second, independent implementation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lockbox.crypto.base import (
    AEAD_KEY_SIZE,
    AEAD_NONCE_SIZE,
    AEAD_TAG_SIZE,
    MLKEM1024_CT_SIZE,
    MLKEM1024_EK_SIZE,
    MLKEM1024_SEED_SIZE,
    MLKEM_SS_SIZE,
    Aead,
    CryptoBackend,
)
from lockbox.errors import FormatError, IntegrityError, WrongKeyError

__all__ = ["CryptoBackendConformance", "HKDF_RFC5869_VECTORS"]


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- ChaCha20-Poly1305: RFC 8439 §2.8.2 ------------------------------------------------------

RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_NONCE = _hex("07000000 4041424344454647")  # constant || IV
RFC8439_AAD = _hex("50515253c0c1c2c3c4c5c6c7")
RFC8439_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
    b"future, sunscreen would be it."
)
RFC8439_CIPHERTEXT = _hex("""
    d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92
    728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b
    4831d7bc3ff4def08e4b7a9de576d26586cec64b6116
""")
RFC8439_TAG = _hex("1ae10b594f09e26a7e902ecbd0600691")

# --- HKDF-SHA-256: RFC 5869 Appendix A, test cases 1-3 (ikm, salt, info, length, okm) ----------

HKDF_RFC5869_VECTORS = [
    pytest.param(
        b"\x0b" * 22, bytes(range(0x0D)), bytes(range(0xF0, 0xFA)), 42,
        _hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
             "34007208d5b887185865"),
        id="A.1-basic",
    ),
    pytest.param(
        bytes(range(0x50)), bytes(range(0x60, 0xB0)), bytes(range(0xB0, 0x100)), 82,
        _hex("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
             "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
             "cc30c58179ec3e87c14c01d5c1f3434f1d87"),
        id="A.2-long-inputs",
    ),
    pytest.param(
        b"\x0b" * 22, b"", b"", 42,
        _hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
             "9d201395faa4b61a96c8"),
        id="A.3-empty-salt-info",
    ),
]

# --- Argon2id v0x13, no secret, no associated data --------------------------------------------
# P-H-C/phc-winner-argon2, src/test.c (the reference implementation's own tests, Argon2id
# section): password "password", salt "somesalt", 32-byte tag; (t, m KiB, p, password, salt, tag).
# Each was re-checked against argon2-cffi 25.1.0 (libargon2) hash_secret_raw(type=ID).

ARGON2ID_REFERENCE_VECTORS = [
    pytest.param(2, 1 << 16, 1, b"password", b"somesalt",
                 "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7",
                 id="t2-m64MiB"),
    pytest.param(2, 1 << 8, 1, b"password", b"somesalt",
                 "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe",
                 id="t2-m256KiB"),
    pytest.param(1, 1 << 16, 1, b"password", b"somesalt",
                 "f6a5adc1ba723dddef9b5ac1d464e180fcd9dffc9d1cbf76cca2fed795d9ca98",
                 id="t1-m64MiB"),
    pytest.param(4, 1 << 16, 1, b"password", b"somesalt",
                 "9025d48e68ef7395cca9079da4c4ec3affb3c8911fe4f86d1a2520856f63172c",
                 id="t4-m64MiB"),
    pytest.param(2, 1 << 16, 1, b"differentpassword", b"somesalt",
                 "0b84d652cf6b0c4beaef0dfe278ba6a80df6696281d7e0d2891b817d8c458fde",
                 id="other-password"),
    pytest.param(2, 1 << 16, 1, b"password", b"diffsalt",
                 "bdf32b05ccc42eb15d58fd19b1f856b113da1e9a5874fdcc544308565aa8141c",
                 id="other-salt"),
]
# Same source, the one two-lane Argon2id case (libsodium's crypto_pwhash only does one lane).
ARGON2ID_TWO_LANES = (2, 1 << 8, 2, b"password", b"somesalt",
                      "6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037")
# Interop value, not a published vector: lockbox-like parameters (16-byte salt, t=3, 64 MiB,
# p=1), computed with argon2-cffi 25.1.0 (libargon2) and equal to cryptography 50.0.2's output.
ARGON2ID_INTEROP = (3, 1 << 16, 1, b"lockbox", bytes(range(16)),
                    "e4e6f93f53531e659d6834d16da92c5fc73112219cf5db796b62d62c66f44fac")

# --- ML-KEM-1024 (FIPS 203 final) -------------------------------------------------------------
# C2SP/CCTV @6e77321, ML-KEM/unluckysample/ML-KEM-1024.txt ("unlucky" vector: needs an
# unusually long XOF sampling): d, z -> ek; Decaps(dk, c) = K on the success path.
MLKEM_UNLUCKY_SEED = _hex(
    "9526e27d918ae2379c067c81c59eca33fcd7045ea098c6ea6ed7d8aaea511cb6"  # d
    "8476013560151d986dc7834dcb57c75f845f8d7ee71558d0955f3f4feb723cf2"  # z
)
MLKEM_UNLUCKY_EK = _hex("""
    33d75c6cf5cbc85a3388d7b10dc236896c1bd24522f62b7b26792d1d24b8a40b1575ba151f55c0f6005220f27dc4
    f1bad864a475c563d18c7c6d9ab466e7240a241ee0989a710393235b7fe7087c719cad1c8a6a5520c96317be9f40
    59f97380c2a16ee2aa2f39422e8096b3d3fa2e3a05c510ec53a810324092a5c06a24349c7cbb1200b0d65273a91c
    d0e58c2b209fc7a15b41641e7b587851f0b1d66504723751d8a54964b85dac910e704ac4c08274ebb9a63a6b261c
    62735da61799b3c205c824f6667133fc391392a1af0b5833fbbb6a918633b3c5b92205ed684c8b3a0b0167492ca7
    7a1ca330ab47c618ecc7c653a009bc9ff978a72cbbaddf3aa4d628a244a9c0777b9b69da49217797f89510cbeb85
    e2e16e40585270ca5219687c0778a8ebc129d2ea6fc705ba0226598cba77fb38790617ada59455e9b8c0e8c6a70f
    f4a2f54a3595f2bede418c4dc05ce6c79e1b38492a4642fec367f214b065b532086549e9c7695744c598e2c6d4b3
    8c57f8643d79403e493a98c3775c4619cb445eacc34ccb152534c521073c56be6454eb480c4da79417a5181a5aa1
    8d914b2a92ac67d9a0f98a38843c505594c3c0fb2b6204bcf162ace9001f3ceb93e1d32c70f93ed12b56f49cb5ee
    285c0d53602158a5fe69cdf102127fc271ff02418ac7475bf22d2e4b67968026ceb0028c193ef869788236785ea1
    9dbc8455e1e81af7629b7a4b365b0b3f62c9459744c88fbb54aee32cb358016be44f9b4763a72b35ec973af9da5a
    389bbaa14a80c6f954e307ae0febaea8cabb7dc965d34261c00999caf20eb3160fd04bc5c14684afb44d7cd3b6c4
    62affb8a9680a5c5e7973355615f9329105e3098bbaac25763af92f4b296d36ab3f47bccb46d02a901a1a9b098d5
    cca2e9ba8e3c6f1495b45e08756d54951ce4b1a4e76917d19e53a09ec8f168b453254e93322488a7eabbb7a5958a
    b9aaa13b9c4a0e996fb6749368567199e98976782fa38442bd366fdf0b30e29423b0c21c64bb8890d857e4b8a3e7
    a05faacaa87959abaf09294d5191b7f44667505364d8559b87cfeca38dc9995994473411e51e95d1cd79f4a6aa62
    789f49b9cc4b3aa4448885a36f5b4132ca659fab15aa5dc86600f5a54921bd5cba9be126b59fa1c1aa73477fb9bb
    bf7b4e4844704d61a222562c8419b7b6d686d381662ad8311efc86d4bb336c321995163280769299f8a25c5c9276
    7b2e72891ff483cdc5d32ef03c0cfee201e053cacba8ca1676019e5a3523a2633f3c992f1b8bd468aa6d9043c093
    2a1b42b01a5916ca55cb360c52329209265017141438c663c95d08714e16ac20473f2cc4aee84778258c1f64989e
    d544983ef715c7c996a9cc5435666bdc5ab37ef0444833747067565a6c0f89faa1d0289e50431397e19ee4f52499
    05b92fa4c8f1a9625bf043ae6a9c74598e9212167ba4a134a658918274892a63f39a32c9e958c35a142a07c64a50
    7acd786a44585faad85f3a80751524086835519192428862c546d37ab13c875c07ad2af6364bc5782f49b92d9321
    4c8548567a453e44930071b32db75aa7981c517937b6a558a694529405bc8f5591df544c44b0aa98562575519f01
    543bb1200e970b062992b8a569992413c46c451cedcca15179bb324b7074b7160b814776da0f7fb53a1c50b1e884
    2c68b642297081979c96bffb0e3114100fa81d63a04b491a51202c646fd43ccbb3850f72ab947c207522377a5949
    d302b5e6c5148083821cd00227691aa21b45456a652472c1fbe69b03770182847a7f215830f030ac71207c5ab9e8
    c86a8b17076b5cad44b41fe361adf3194e1df9cd7a7b2a84b64faa29a4fc4b24963580874c10a3f0921753401603
    582a0348b2d54280bca4c5991dd8278950f9b02514bb5d25cd42c223afd878cbecad93c4735a61c3571b293ea897
    f112006ea3c70972323a2a9a7e4bc809186de9b4c10e7955134a9a721ca8a03ac7fcd670d3a42a145aaede081d07
    ab6da0355758170760699fa17b26442c96a1034695e7a8b26404180b5cd1813511c0a4584135723a97f98819a413
    89cea4369cd92fffd087666545b0228d0df21b6f95bd8ef27d4acc1ffe28242808a006772748346074548dd94960
    f56aba3e7ace75a544fc532121a8ccc0544538ad0b886ed7dbd5b634baadd04a970bd36fb78550cf6509660f626f
    879521e3
""")
MLKEM_UNLUCKY_CT = _hex("""
    05ebe8bf5036f51c3c961d9ac47b0b93d821170a22db2360c8004814808a871b4f4cb04438595b4338be7dee6b92
    7ce07da00ff283c7ead22f8a58e6d3149262e60431975f8da4e1f1851eb3b9159288cc29139a7fadab774131eb17
    cd11811c9764caf5474de6de53ac1f98db295141ec3f3a35cbf3a0d741455daef368f105df233d9d6abb92e331e6
    d4f67ce8f8aaab546c4704d158c477c371e0d3acab690154df0da67e9e36dbab01aa3f1cf59fa90d9c895b79b268
    c46db4c02778f9949186f7a99618535b1ca431b86226ea1b4f0f11e8c7e96396e26367ad9b8621b24a31b8597630
    a1b252a32b955d2bfa30b88818ae0677fea5cadf9a4eb4f8833c9f2175f872d456d9f4fc1af45e2f2f11e04f5370
    1c36105ac68b8909c191a74b30221b1b0b24bb250d7318bc30a8ffe12616514dc2782dad229ce8a9fad0ccffd125
    7f4543d79d903cc8fd4cf84748bd631a4c22af93134a8d1bc7716d9b2676844ed501e94aa4925c694009f9d3c973
    6d8c56284915e23f7801e9f0878d0b3b1bce31915350050f1d8d40e708452be07f462085e00f11968c338d573bcf
    7209b05a1a673a87a220aa3db2d8f1cbabe497bcf0f42e8067ba57af6101d8f2fb62d82ebaf148c19b58a8c4f2f0
    5301a82c51db01d9c7fd16b3557bdb418cfddb5d0308e7d77f225388e3cc8cf4f7372b3c58292c4375d177494fee
    0ddd2ed8bf270272c73672f1db76ee6381410eb3d8c78b9bf20f7e4d5f5bca05dcc4bc0d1b4ede1d03eeb213abf4
    b81fb06087e2dd3c232421053e6e7109e46d9a96a1eeb2b4f81d4e0fd976e193bc78100488a5a7bd86fa12c9a461
    6ae407e9736841b9766d6b8c7f94e52a0ff22af9163f530d3bfd4ad5b30c94d39d1a887f9000f13a51ee8df211dc
    554eb7d2de7789f82a6353285250be2f995e3107121c5cb2ab21d53af35e3c243769d63c117d7d9bf3996e66bd70
    a7db20e348c9492299160a89d87e8e5f5906c0ad9b9d695ecd006cf8ae6e28237edcd6b1efd5aa282896ff0ab131
    0a3351eac19038b91c04b5a956fe87d9639c4c0f8bc0de082483143d920fe0053926da78bf1c4a9f7213fd2aaa94
    77174451ec80dfd648384bf7a17934a6029e7caaa5d39652c8a762b5ff9792b6aeed255d32fcac6101ecf6b1a8fb
    0404d8875c764b33437d86fff1883ecd7fd3596791992fb38ee1b4e4c124e40453b462e9d775d9522dc12a8a87e5
    ba4a1ead55ed66dde8c483707b99c4cefcd0f5ddaf95e2d53566e02d3d6173adcd1d00a2f4ef692d7413ab1a11c7
    a1fa09fa02cab71dd23ad4eacadf8bea4178553ffd653823448a00ff1663a5ce63b6ab1ec1f504de226dd9d6fe11
    a4175b0b6dcec73caa2094efd3fc572d8f404d64d0097588f3c4aed9ddba08db51d9dfa4e88fdcc60ed13acff53b
    d614fd3d25f81b33378928290716d7ffcdc61ba12ed4a5da993bcf142a94851be2e0dd4193dcf7676b52eb8e0289
    cd32c6cb37eaf8e431c3db867eb4637bc3c524c7864a4872c2824f35dc648a4a11a34e31d445ad4d4cfa3f8929da
    780f980e8888cbaf0e81ff39dc0082a9ff558fff44df62c4cbd43d65a065af4dd3be760f21c4c040b97f6035c4c2
    067f65a167d243ed6bb5003150d2e831d5d8df6eced677d227625fb0e2b19634a551412e8ff92f49fe6f5545882c
    b58ee0e790df5c5f1bfbdcb688d61b54219b562c1ad0bc80485d54c6bfadad18413d0bb8f0a18b00ba1efc5a632c
    aef5a338c82dca31adc88c67f861863fef441a311198c5c232af7cb3cb400eead5037df36b7491dad3208f9a639f
    aa4dbb4c270c2d49b22ca99fdbcf82df95374d3ca1bded5f3ca005cbb3ad19683072afa53ec06c1d52e53901368d
    1c48e2f0094ad70d8907367ef2ba5000fcfcd2d8929dce6482790707b5c1f0051f77cc2340ee9261ae23e6fd7da4
    7f5085b5b210c1241b1ceb539791df6794c4aeea8a3f451b8b8f39ab7f74b3f5de85aef50b0773d36afd6c43b453
    d58f24f99931794334303f5ed1c42766e31ab6f3cf2827f9c91b697c0d2fccc2290d1b57e4004763ce95a112cadc
    2f37b27dea2f9809da6acbe86e8b94244f152d97e74727cefdcdecc94aca22c72b7d8595ffc64628b0cf790fdc5f
    2b907905eab78dc71fe92e73f7258b2fdc206afb4ce778fadefd39a394ae3af2810a8f7848bd93ff83bd84d16a3e
    713129e6
""")
MLKEM_UNLUCKY_SS = _hex("984b648fda1cc7ff5fb01d89387f1827ffd43f0bd6c12b157b8b6101273a01ee")

# C2SP/wycheproof @08dbfd8, testvectors_v1/mlkem_1024_test.json tcId 1 (from C2SP/CCTV
# ML-KEM/strcmp): a ciphertext that must take the implicit-rejection path, so
# K = J(z || c) = SHAKE256(z || c).
MLKEM_STRCMP_SEED = _hex(
    "8247c17686a8bc0b3afebe6bed1df1dc3ff7fa07c3670f624930235f20aecb43"  # d
    "53ece11faa61f47d946ee501abb9a48029096de63b243a1794c4a760f98cc157"  # z
)
MLKEM_STRCMP_EK_SHA256 = "5db6d38ecb5e92dda86dd468931bd4272def51b901c05979ce40053acc85a1e8"
MLKEM_STRCMP_CT = _hex("""
    001d80376f40a555c9590838e4dd953cfb9a30edf7768f0f35b298c69eb459a42e081f79b419391b14347254849f
    1ddeac6d03975f22c9bd0e7a27cef18432e1d42b75d3845130cec8cd2387007116f7b21f69d196eb3340a44d4b3d
    92b2acfa420ce4654063d0e739ffb9238990c117454ed017d33bd63bc1c2da9adc52cb0fa2dc90f6f7482e3072f4
    d620d65afab8e908943dd7a4e91ed4e12b9147656a8fe758abdfa2d5d2d810edb4409ab09332b9dddccdc6cabf8d
    89633c609a0a005af2f4fac6baf70315103825531f513f9fc9f6d088cf28b54ff6fba4725e6ee291131b778058a4
    5ed49bea10c1aa0aed05796a3bc88a1a45bc63a01b3646521e7968bdb0eab72758a6f025411814013e123fe35448
    4f4380a218f6f0b6876bf4a225766890ab191b6ffdf84fc19521533b58cc518a5f40d7e2861e9a51c297e3abfe8b
    36674a066bdbb52390b6e2c91d0a6e1ae66210f3e700344d1a75978945ac9ef7fe72a7c1f6939690cd33e11ef3a9
    efbb9dc3285254af07121758aad87d34a85231b63f23a6b81a2e5bd232c0138ff574417d2b1fcbde45b686ed6348
    da7bb2cef151285ee52f4e0e214139f812a68df69459706baf85e31a0073623c7faec1c0b99d86d34fd3a7145210
    c1870f37687f8d4c94849a22dd1099cd8c730969fcf8e1cc4c1af623f89bb0f2e3b6e4a4c37b6d4d7c8f66df8c38
    4c66264e7a4b35e893cf7424642db20a844aef74a12f1dd244bd331101486babee54b326440f9f9b97e1f1a60314
    6b42b8266a05781ec8bfff57bab186973a9b7bffa60ff246a01d2c9259950e94e9df25dca30c59890280636dee43
    f83510ddf7de2a5f77a78854cde70ead0943bac7895ee10d363a9334a1d502c282671161a2355f1d4be99a1f9f67
    e687b9851caf8a3db107940b1ab4481084f8a96053c6205a207ca19043f8d20090ef245557c6b7c1bd2065d2db7f
    8343acdcd9f7341491c665a8842c19e19d12ab36b01ec68c95bfd9226aa10370ea1b71f08b326f7817a96c53132d
    7b5004fa00ecf1d6204198fc785b05438bc687cba235e5c2211d8e1e1f211664f240c3c2e4f4a1990943ec83ad80
    141beceba6e31384c0aa148783872593c0ce9e002cb2af6de35845dc1fcd6e7d5da96b6e8cf3a4cab1d6490ad182
    03cdac1a77f608c8460d21230ac8470f841c6c17f5a1faff871c27c5a9e0e93a20b5c1e17d8f7a5c74065ab192c3
    3d08d0c603226a01b9f5976e0f06625baa7f90554ee805d7ee242cb54d3183758bf948ea31024fa3aa368cfc8ba7
    df1474a4388e84e3f79617080a96ce3af88ce5e1b9ba02871c2e6a54d0fc05050295f5f9a638a63c51428bc935c7
    f539cdd90a5501b8832a3bea490657f026ec6745d4b30f518e6f4b2bee0afb65b34df1d81a4751aed0865b9cb01f
    4cdc65cab3ee1b3e988b23c0f2c63cb16e305d4c7b69a2ebac8471d6d61412004bbbd4550debbf64c49f5975df1f
    4bef53281fbadda4a5fb7dfa63e7261499a74c7f3af2026a997c1fdcde6c07fb3ce720a450f9de6970d612170624
    5e4cd2332247c6cce84085afbf7fab4f7f1fa98626646630e48e2dab8cb21661c306a22ebd7243beb7fc3c6cf570
    88a40d05c2381fef655c42817f1bb95de7d20f38d02fc1e3b2d6852b2a8f3a4dd4a262ada59f48482e44468c10c0
    506368c305ee4efc93d60adac26c13258739640890762077e771ecb57c01efbb895c65a9eb1a2c479f1ad7434377
    331738a2034840682de3ae673ce47e3e54172556a3a543066fd5e30473c33641ffe90144bbe15d68b5e8ab9c063f
    48edb3a4480356e7a7ddef32c60f0edffcf1c5fef4eb488476794f42af7b66eb01b19bfba59cacd157d485037b2c
    383add0cf2ff727c1056a466930e46e3f081af429a45e5ccdfe8e0f3c210474eb0156744c7d5486f761910083b6a
    8fba1898a52b112b96b4b3387f2f3e4000aa0854781b029e8c01f3f09f0cd361eaaa56a89b2a054a1805248e89dd
    c32dc8a3e53333595686e4e7b076340076a29c1c0f4f1232af35527e8d35f887e7fe524991b5b74da3b02dc26f72
    27595c096fd40541b86e7f0705cebd4c2a134c14e8f9eef94fa609a305e6a429f290404f1043c1666387df4bafc2
    308dc4eb2539c01dedc23d9c2018a9c5cdec50475a8f8ee32d9d13d79b304dcf69b949be7877fab4752b45b9ee04
    622123db
""")
MLKEM_STRCMP_SS = _hex("c6338bf92f3930b95f81d87fe669fabc42aaa549e8fecfbfdbe237d739fe4d96")


def _implicit_rejection_key(seed: bytes, ciphertext: bytes) -> bytes:
    """FIPS 203 Algorithm 18, line 8: K-bar = J(z || c) with J = SHAKE256(., 32)."""
    return hashlib.shake_256(seed[32:] + ciphertext).digest(MLKEM_SS_SIZE)


# --- Ed25519 (RFC 8032 §7.1, TEST 1-3): (public key, message, signature) ------------------

ED25519_RFC8032_VECTORS = [
    pytest.param(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
        "39701cf9b46bd25bf5f0595bbe24655141438e7a100b", id="test1-empty"),
    pytest.param(
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f"
        "3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00", id="test2-one-byte"),
    pytest.param(
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67"
        "f760984dc6594a7c15e9716ed28dc027beceea1ec40a", id="test3-two-bytes"),
]
ED25519_L = 2**252 + 27742317777372353535851937790883648493  # the group order
ED25519_P = 2**255 - 19
# y of the points of small order (order 1, 2, 4 and the two order-8 y values), as
# libsodium lists them; each is tried with both signs of x and, for 0 and 1, also
# non-canonically (y + p).
ED25519_SMALL_ORDER_Y = (
    0, 1, ED25519_P - 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
    ED25519_P, ED25519_P + 1,
)
ED25519_NOT_A_POINT = (2).to_bytes(32, "little")  # (y^2 - 1) / (d y^2 + 1) is no square

# --- age passphrase files (tests/formats/sync/vectors/age.json) --------------------------------
# Written by age-encryption 0.3.1 (the browser library) and by lockbox's encrypt_vault; pyrage
# (rage) reads them all too. Tiny scrypt work factors keep the suite fast.

AGE_VECTORS_DIR = Path(__file__).resolve().parents[1] / "formats" / "sync" / "vectors"
AGE_VECTORS = json.loads((AGE_VECTORS_DIR / "age.json").read_text(encoding="utf-8"))


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


class CryptoBackendConformance:
    """Known answers and misuse checks for one crypto backend."""

    @pytest.fixture
    def backend(self) -> CryptoBackend:
        raise NotImplementedError("subclasses provide the backend fixture")

    # -- protocol ---------------------------------------------------------------------------

    def test_implements_protocol(self, backend: CryptoBackend) -> None:
        assert isinstance(backend, CryptoBackend)
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.aead(bytes(AEAD_KEY_SIZE)), Aead)

    # -- BLAKE3 ------------------------------------------------------------------------------

    # BLAKE3-team/BLAKE3 test_vectors/test_vectors.json ("hash" mode, first 32 bytes): the
    # input is the repeating byte sequence 0, 1, ..., 250, 0, 1, ... of the given length.
    BLAKE3_VECTORS = (
        (0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
        (1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"),
        (1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"),
        (1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"),
        (1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"),
        (2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"),
        (4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"),
        (7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817"),
    )

    @pytest.mark.parametrize(("length", "expected"), BLAKE3_VECTORS)
    def test_blake3_known_answers(self, backend: CryptoBackend, length: int,
                                  expected: str) -> None:
        data = bytes(i % 251 for i in range(length))
        h = backend.blake3()
        h.update(data)
        assert h.digest().hex() == expected

    def test_blake3_incremental_equals_one_shot(self, backend: CryptoBackend) -> None:
        data = bytes(i % 251 for i in range(7169))
        one = backend.blake3()
        one.update(data)
        parts = backend.blake3()
        for start in range(0, len(data), 1000):
            parts.update(memoryview(data)[start:start + 1000])
        assert parts.digest() == one.digest()
        assert len(one.digest()) == 32

    # -- ChaCha20-Poly1305 ------------------------------------------------------------------

    def test_aead_rfc8439_seal(self, backend: CryptoBackend) -> None:
        sealed = backend.aead(RFC8439_KEY).seal(RFC8439_NONCE, RFC8439_PLAINTEXT, RFC8439_AAD)
        assert sealed == RFC8439_CIPHERTEXT + RFC8439_TAG

    def test_aead_rfc8439_open(self, backend: CryptoBackend) -> None:
        opened = backend.aead(RFC8439_KEY).open(
            RFC8439_NONCE, RFC8439_CIPHERTEXT + RFC8439_TAG, RFC8439_AAD
        )
        assert opened == RFC8439_PLAINTEXT

    @pytest.mark.parametrize("index", [0, 57, len(RFC8439_PLAINTEXT) - 1,
                                       len(RFC8439_PLAINTEXT), len(RFC8439_PLAINTEXT) + 15])
    def test_aead_tampered_byte_is_rejected(self, backend: CryptoBackend, index: int) -> None:
        sealed = _flip(RFC8439_CIPHERTEXT + RFC8439_TAG, index, 0x80)
        with pytest.raises(IntegrityError):
            backend.aead(RFC8439_KEY).open(RFC8439_NONCE, sealed, RFC8439_AAD)

    def test_aead_wrong_aad_is_rejected(self, backend: CryptoBackend) -> None:
        aead = backend.aead(RFC8439_KEY)
        sealed = RFC8439_CIPHERTEXT + RFC8439_TAG
        for aad in (b"", _flip(RFC8439_AAD, 0), RFC8439_AAD + b"\x00", RFC8439_AAD[:-1]):
            with pytest.raises(IntegrityError):
                aead.open(RFC8439_NONCE, sealed, aad)

    def test_aead_wrong_key_or_nonce_is_rejected(self, backend: CryptoBackend) -> None:
        sealed = RFC8439_CIPHERTEXT + RFC8439_TAG
        with pytest.raises(IntegrityError):
            backend.aead(_flip(RFC8439_KEY, 31)).open(RFC8439_NONCE, sealed, RFC8439_AAD)
        with pytest.raises(IntegrityError):
            backend.aead(RFC8439_KEY).open(_flip(RFC8439_NONCE, 11), sealed, RFC8439_AAD)

    @pytest.mark.parametrize("size", [0, 1, AEAD_TAG_SIZE - 1])
    def test_aead_input_shorter_than_tag_is_rejected(self, backend: CryptoBackend,
                                                     size: int) -> None:
        sealed = (RFC8439_CIPHERTEXT + RFC8439_TAG)[:size]
        with pytest.raises(IntegrityError):
            backend.aead(RFC8439_KEY).open(RFC8439_NONCE, sealed, RFC8439_AAD)

    def test_aead_empty_plaintext(self, backend: CryptoBackend) -> None:
        aead = backend.aead(RFC8439_KEY)
        sealed = aead.seal(RFC8439_NONCE, b"", RFC8439_AAD)
        assert len(sealed) == AEAD_TAG_SIZE
        assert aead.open(RFC8439_NONCE, sealed, RFC8439_AAD) == b""
        with pytest.raises(IntegrityError):
            aead.open(RFC8439_NONCE, sealed, b"other aad")
        with pytest.raises(IntegrityError):
            aead.open(RFC8439_NONCE, _flip(sealed, 0), RFC8439_AAD)

    def test_aead_round_trip_and_reuse(self, backend: CryptoBackend) -> None:
        key = bytes(range(AEAD_KEY_SIZE))
        aead = backend.aead(key)
        big = bytes(range(256)) * 4096  # 1 MiB
        for counter, plaintext in enumerate([b"x", big, b"", big[:100_003]]):
            nonce = counter.to_bytes(AEAD_NONCE_SIZE, "little")
            sealed = aead.seal(nonce, plaintext, b"aad")
            assert len(sealed) == len(plaintext) + AEAD_TAG_SIZE
            assert sealed[: len(plaintext)] != plaintext or not plaintext
            assert aead.open(nonce, sealed, b"aad") == plaintext
            # Deterministic, and a second instance for the same key agrees.
            assert backend.aead(key).seal(nonce, plaintext, b"aad") == sealed

    @pytest.mark.parametrize("size", [0, 16, AEAD_KEY_SIZE - 1, AEAD_KEY_SIZE + 1])
    def test_aead_rejects_wrong_key_size(self, backend: CryptoBackend, size: int) -> None:
        with pytest.raises(ValueError):
            backend.aead(bytes(size))

    @pytest.mark.parametrize("size", [0, 8, AEAD_NONCE_SIZE - 1, AEAD_NONCE_SIZE + 1, 24])
    def test_aead_rejects_wrong_nonce_size(self, backend: CryptoBackend, size: int) -> None:
        aead = backend.aead(RFC8439_KEY)
        with pytest.raises(ValueError):
            aead.seal(bytes(size), b"data", b"")
        with pytest.raises(ValueError):
            aead.open(bytes(size), RFC8439_CIPHERTEXT + RFC8439_TAG, RFC8439_AAD)

    # -- HKDF-SHA-256 -----------------------------------------------------------------------

    @pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), HKDF_RFC5869_VECTORS)
    def test_hkdf_rfc5869(self, backend: CryptoBackend, ikm: bytes, salt: bytes, info: bytes,
                          length: int, okm: bytes) -> None:
        assert backend.hkdf_sha256(ikm, salt, info, length) == okm

    def test_hkdf_lengths(self, backend: CryptoBackend) -> None:
        full = backend.hkdf_sha256(b"ikm", b"salt", b"info", 255 * 32)
        assert len(full) == 255 * 32
        for length in (0, 1, 31, 32, 33, 64, 100):
            assert backend.hkdf_sha256(b"ikm", b"salt", b"info", length) == full[:length]
        with pytest.raises(ValueError):
            backend.hkdf_sha256(b"ikm", b"salt", b"info", 255 * 32 + 1)
        with pytest.raises(ValueError):
            backend.hkdf_sha256(b"ikm", b"salt", b"info", -1)

    def test_hkdf_empty_salt_is_hashlen_zeros(self, backend: CryptoBackend) -> None:
        assert (backend.hkdf_sha256(b"ikm", b"", b"info", 42)
                == backend.hkdf_sha256(b"ikm", bytes(32), b"info", 42))

    # -- Argon2id ---------------------------------------------------------------------------

    @pytest.mark.parametrize(("t", "m", "p", "password", "salt", "tag"),
                             ARGON2ID_REFERENCE_VECTORS)
    def test_argon2id_reference_vectors(self, backend: CryptoBackend, t: int, m: int, p: int,
                                        password: bytes, salt: bytes, tag: str) -> None:
        out = backend.argon2id(password, salt, time_cost=t, memory_kib=m, parallelism=p,
                               length=32)
        assert out.hex() == tag

    def test_argon2id_two_lanes(self, backend: CryptoBackend) -> None:
        t, m, p, password, salt, tag = ARGON2ID_TWO_LANES
        out = backend.argon2id(password, salt, time_cost=t, memory_kib=m, parallelism=p,
                               length=32)
        assert out.hex() == tag

    def test_argon2id_interop_16_byte_salt(self, backend: CryptoBackend) -> None:
        t, m, p, password, salt, tag = ARGON2ID_INTEROP
        out = backend.argon2id(password, salt, time_cost=t, memory_kib=m, parallelism=p,
                               length=32)
        assert out.hex() == tag

    def test_argon2id_output_length(self, backend: CryptoBackend) -> None:
        kwargs = dict(time_cost=1, memory_kib=64, parallelism=1)
        short = backend.argon2id(b"pw", b"saltsalt", length=16, **kwargs)
        long = backend.argon2id(b"pw", b"saltsalt", length=100, **kwargs)
        assert len(short) == 16 and len(long) == 100
        # The tag length is an input of H0, so a longer tag is not an extension.
        assert long[:16] != short

    @pytest.mark.parametrize("bad", [
        dict(time_cost=0),
        dict(parallelism=0),
        dict(memory_kib=7),
        dict(parallelism=2, memory_kib=15),
        dict(length=3),
        dict(salt=b"1234567"),
    ])
    def test_argon2id_rejects_bad_parameters(self, backend: CryptoBackend, bad: dict) -> None:
        kwargs = dict(salt=b"saltsalt", time_cost=1, memory_kib=64, parallelism=1, length=32)
        kwargs.update(bad)
        salt = kwargs.pop("salt")
        with pytest.raises(ValueError):
            backend.argon2id(b"password", salt, **kwargs)

    # -- ML-KEM-1024 ------------------------------------------------------------------------

    def test_mlkem_keygen_known_answer(self, backend: CryptoBackend) -> None:
        assert backend.mlkem1024_public_key(MLKEM_UNLUCKY_SEED) == MLKEM_UNLUCKY_EK
        ek = backend.mlkem1024_public_key(MLKEM_STRCMP_SEED)
        assert len(ek) == MLKEM1024_EK_SIZE
        assert hashlib.sha256(ek).hexdigest() == MLKEM_STRCMP_EK_SHA256

    def test_mlkem_decapsulate_known_answer(self, backend: CryptoBackend) -> None:
        ss = backend.mlkem1024_decapsulate(MLKEM_UNLUCKY_SEED, MLKEM_UNLUCKY_CT)
        assert ss == MLKEM_UNLUCKY_SS
        # A valid ciphertext does not take the rejection path.
        assert ss != _implicit_rejection_key(MLKEM_UNLUCKY_SEED, MLKEM_UNLUCKY_CT)

    def test_mlkem_implicit_rejection_known_answer(self, backend: CryptoBackend) -> None:
        ss = backend.mlkem1024_decapsulate(MLKEM_STRCMP_SEED, MLKEM_STRCMP_CT)
        assert ss == MLKEM_STRCMP_SS
        assert ss == _implicit_rejection_key(MLKEM_STRCMP_SEED, MLKEM_STRCMP_CT)

    @pytest.mark.parametrize("index", [0, 700, MLKEM1024_CT_SIZE - 1])
    def test_mlkem_wrong_ciphertext_gives_rejection_key(self, backend: CryptoBackend,
                                                         index: int) -> None:
        bad = _flip(MLKEM_UNLUCKY_CT, index)
        ss = backend.mlkem1024_decapsulate(MLKEM_UNLUCKY_SEED, bad)  # no exception
        assert ss != MLKEM_UNLUCKY_SS
        assert ss == _implicit_rejection_key(MLKEM_UNLUCKY_SEED, bad)

    def test_mlkem_round_trip(self, backend: CryptoBackend) -> None:
        seed = backend.random_bytes(MLKEM1024_SEED_SIZE)
        ek = backend.mlkem1024_public_key(seed)
        assert len(ek) == MLKEM1024_EK_SIZE
        assert backend.mlkem1024_public_key(seed) == ek  # deterministic from the seed
        ss1, ct1 = backend.mlkem1024_encapsulate(ek)
        ss2, ct2 = backend.mlkem1024_encapsulate(ek)
        assert len(ss1) == MLKEM_SS_SIZE and len(ct1) == MLKEM1024_CT_SIZE
        assert ct1 != ct2 and ss1 != ss2  # randomized
        assert backend.mlkem1024_decapsulate(seed, ct1) == ss1
        assert backend.mlkem1024_decapsulate(seed, ct2) == ss2
        # Another key pair cannot open it (it gets its own rejection key instead).
        other = _flip(seed, 0)
        assert backend.mlkem1024_decapsulate(other, ct1) != ss1

    def test_mlkem_encapsulate_to_known_key(self, backend: CryptoBackend) -> None:
        ss, ct = backend.mlkem1024_encapsulate(MLKEM_UNLUCKY_EK)
        assert backend.mlkem1024_decapsulate(MLKEM_UNLUCKY_SEED, ct) == ss

    def test_mlkem_rejects_key_failing_modulus_check(self, backend: CryptoBackend) -> None:
        # FIPS 203 §7.2: every 12-bit coefficient of ek must be < q = 3329. Setting the first
        # one to 0xFFF is the pattern of Wycheproof mlkem_1024_encaps_test.json tcId 4.
        bad = bytearray(MLKEM_UNLUCKY_EK)
        bad[0] = 0xFF
        bad[1] |= 0x0F
        with pytest.raises(FormatError):
            backend.mlkem1024_encapsulate(bytes(bad))

    @pytest.mark.parametrize("size", [0, 32, MLKEM1024_SEED_SIZE - 1, MLKEM1024_SEED_SIZE + 1])
    def test_mlkem_rejects_wrong_seed_size(self, backend: CryptoBackend, size: int) -> None:
        with pytest.raises(ValueError):
            backend.mlkem1024_public_key(bytes(size))
        with pytest.raises(ValueError):
            backend.mlkem1024_decapsulate(bytes(size), MLKEM_UNLUCKY_CT)

    @pytest.mark.parametrize("delta", [-MLKEM1024_EK_SIZE, -1, 1, -384])
    def test_mlkem_rejects_wrong_key_size(self, backend: CryptoBackend, delta: int) -> None:
        ek = (MLKEM_UNLUCKY_EK + bytes(8))[: MLKEM1024_EK_SIZE + delta]
        with pytest.raises(ValueError):
            backend.mlkem1024_encapsulate(ek)

    @pytest.mark.parametrize("delta", [-MLKEM1024_CT_SIZE, -1, 1, -480])
    def test_mlkem_rejects_wrong_ciphertext_size(self, backend: CryptoBackend,
                                                 delta: int) -> None:
        ct = (MLKEM_UNLUCKY_CT + bytes(8))[: MLKEM1024_CT_SIZE + delta]
        with pytest.raises(ValueError):
            backend.mlkem1024_decapsulate(MLKEM_UNLUCKY_SEED, ct)

    # -- random -----------------------------------------------------------------------------

    def test_random_bytes(self, backend: CryptoBackend) -> None:
        assert backend.random_bytes(0) == b""
        for size in (1, 12, 32, 1000, 70_000):
            out = backend.random_bytes(size)
            assert isinstance(out, bytes) and len(out) == size
        a, b = backend.random_bytes(32), backend.random_bytes(32)
        assert a != b
        sample = backend.random_bytes(65_536)
        assert len(set(sample)) == 256  # every byte value appears (fails with p ~ 2**-360)

    # -- Ed25519 ----------------------------------------------------------------------------

    @pytest.mark.parametrize(("public_key", "message", "signature"), ED25519_RFC8032_VECTORS)
    def test_ed25519_rfc8032(self, backend: CryptoBackend, public_key: str, message: str,
                             signature: str) -> None:
        pk, msg, sig = _hex(public_key), _hex(message), _hex(signature)
        assert backend.ed25519_verify(pk, msg, sig) is True
        for kind in (bytearray, memoryview):
            assert backend.ed25519_verify(kind(pk), kind(msg), kind(sig)) is True
        assert backend.ed25519_verify(pk, msg + b"\0", sig) is False
        for index in (0, 31, 32, 63):
            assert backend.ed25519_verify(pk, msg, _flip(sig, index)) is False
        assert backend.ed25519_verify(_flip(pk, 0), msg, sig) is False

    def test_ed25519_refuses_s_not_below_l(self, backend: CryptoBackend) -> None:
        pk, _msg, sig = (_hex(v) for v in ED25519_RFC8032_VECTORS[0].values)
        s = int.from_bytes(sig[32:], "little")
        malleated = sig[:32] + (s + ED25519_L).to_bytes(32, "little")  # same point equation
        assert backend.ed25519_verify(pk, b"", malleated) is False

    def test_ed25519_key_not_on_the_curve(self, backend: CryptoBackend) -> None:
        _pk, msg, sig = (_hex(v) for v in ED25519_RFC8032_VECTORS[1].values)
        assert backend.ed25519_verify(ED25519_NOT_A_POINT, msg, sig) is False

    @pytest.mark.parametrize("y", ED25519_SMALL_ORDER_Y)
    @pytest.mark.parametrize("sign", [0, 1])
    def test_ed25519_refuses_small_order_keys(self, backend: CryptoBackend, y: int,
                                              sign: int) -> None:
        # With the identity as the key, R = identity and S = 0 satisfy the cofactorless
        # equation for every message: a key of small order must be refused outright.
        weak = (y | sign << 255).to_bytes(32, "little")
        identity = (1).to_bytes(32, "little")
        for r in (identity, weak):
            assert backend.ed25519_verify(weak, b"any message", r + bytes(32)) is False

    @pytest.mark.parametrize(("pk_size", "sig_size"), [(31, 64), (33, 64), (32, 63), (32, 65)])
    def test_ed25519_rejects_wrong_sizes(self, backend: CryptoBackend, pk_size: int,
                                         sig_size: int) -> None:
        with pytest.raises(ValueError):
            backend.ed25519_verify(bytes(pk_size), b"m", bytes(sig_size))

    # -- age (passphrase) -------------------------------------------------------------------

    @pytest.mark.parametrize("vector", AGE_VECTORS, ids=[v["file"] for v in AGE_VECTORS])
    def test_age_decrypt_vectors(self, backend: CryptoBackend, vector: dict) -> None:
        data = (AGE_VECTORS_DIR / vector["file"]).read_bytes()
        plaintext = backend.age_decrypt_passphrase(data, vector["passphrase"])
        assert isinstance(plaintext, bytes) and len(plaintext) == vector["plaintext_size"]
        assert hashlib.sha256(plaintext).hexdigest() == vector["plaintext_sha256"]

    def test_age_wrong_passphrase(self, backend: CryptoBackend) -> None:
        data = (AGE_VECTORS_DIR / "age-typage-hello.age").read_bytes()
        with pytest.raises(WrongKeyError):
            backend.age_decrypt_passphrase(data, "PW")

    def test_age_damage_is_an_integrity_error(self, backend: CryptoBackend) -> None:
        data = (AGE_VECTORS_DIR / "age-lockbox-2chunks.age").read_bytes()
        passphrase = "pässwörd ✓"
        header_size = data.index(b"\n--- ") + 1 + 48  # "--- " + 43 MAC characters + LF
        assert data[header_size - 1:header_size] == b"\n"
        for index in (header_size + 5, header_size + 16 + 100, len(data) - 1):
            # the STREAM nonce, the first chunk, the last chunk
            with pytest.raises(IntegrityError):
                backend.age_decrypt_passphrase(_flip(data, index), passphrase)
        with pytest.raises(IntegrityError):  # the final chunk dropped
            backend.age_decrypt_passphrase(data[:-17], passphrase)
        mac_at = header_size - 44  # the MAC's first base64 character
        forged = data[:mac_at] + (b"A" if data[mac_at:mac_at + 1] != b"A" else b"B") + \
            data[mac_at + 1:]
        with pytest.raises(IntegrityError):
            backend.age_decrypt_passphrase(forged, passphrase)
